"""Report stage: per-report tables (Markdown, CSV, LaTeX), figures and a Reading of the numbers.

Modules, top down (each imports only those below it):
- cli: the build and command line (`python -m stages.report`): section_lines, build, load_sections, main;
- reading: the Reading: paired per-seed differences of the headline metrics, verdicts, in words;
- sections: a section's tables and figures as Markdown (View; domain shift, group shift, zero-shot);
- notes: the prose around the tables: run settings, table notes, the synthetic teacher and its pools;
- figures: per-group bars, WiSE-FT curves, ID vs shift; one colour and hatch per method (Agg backend);
- tables: records as long and wide frames, mean ± std over seeds, format_pm, method order, table files.
"""
