"""Report stage: per-report tables (Markdown, CSV, LaTeX), figures and a Reading of the numbers.

Modules, top down (each imports only those below it):
- cli: the build and command line (`python -m stages.report`): section_lines, build, load_sections, main;
- reading: the Reading: paired per-seed differences of the headline metrics, verdicts, in words (and
  StarFT's spuriosity drift against FLYP's);
- summary: a composite report of same-kind sections (transfer): each set's accuracy and their mean;
- sections: a section's tables and figures as Markdown (View; domain shift, group shift, ID only, zero-shot;
  variant rows' *Changes* column);
- drift: the spuriosity-drift columns (masked KL where every cell has it, else the unmasked KL);
- notes: the prose around the tables: run settings, table notes, the synthetic teacher and its pools;
- protocol: the data-set protocol table (split, classes, images, templates) and the marks on columns
  whose split a run chose on (`finetune.select`, the probe's L2);
- figures: per-group bars, WiSE-FT curves, ID vs shift on logit axes, worst group vs drift; one colour and hatch per method;
- robustness: effective robustness: the logit transform, the WiSE-FT curve joined on logit axes and each
  method's shift-mean gain over it ("above interpolation line");
- tables: records as long and wide frames, mean ± std over seeds, format_pm, method order, table files.

Beside them, table_file (`python -m stages.report.table_file`): one table file of a built report
copied as a target of its own (rule report_table, results/tables/<name>/<table>.csv).
"""
