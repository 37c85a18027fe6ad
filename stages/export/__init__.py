"""Export stage: a fine-tuned run as a folder that open_clip loads (`local-dir:`, or `hf-hub:` once
uploaded), with its model card.

- `layout`: open_clip's side of the folder (open_clip_config.json's model and preprocessing
  configuration, the tokenizer, the weights file names);
- `weights`: the run's weights as evaluation scores them (the checkpoint; WiSE-FT interpolated
  with the zero-shot weights at `finetune.wiseft_alpha`; the linear head of lp/ft/lpft runs);
- `card`: the model card (README.md): the run, its recipe and its metrics table;
- `run`: `export`, the folder written atomically;
- `__main__`: the command line, `python -m stages.export`.
"""
