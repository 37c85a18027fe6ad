"""The StarFT pipeline as a package, in layers (lowest first; each imports only from those below it):

- `common/`: atomic writes, provenance, progress bars;
- `method/`: the method's library: models and their loading, losses, schedules, zero-shot heads,
  group metrics, scoring, the methods' registry, the teacher's text-embedding file;
- `datasets/`: one reader per published layout, one contract (ClassificationSet), the data check;
- `synthetic/`: the synthetic world: species, scenes and nuisances, SynthBirds, the source task and
  its shifts, the pre-training captions, the tiny CLIP teacher's shape and check;
- `config.py`: the one configuration, validated against workflow/schemas/config.schema.yaml;
- the stages, one package each, a CLI plus its orchestration (`python -m stages.<stage>`):
  `describe/`, `embed/`, `pretrain/`, `finetune/`, `evaluate/`, `report/`. No stage imports another.

docs/architecture.md has the picture, and where a new data set, method, metric or stage goes.
"""

__version__ = "0.1.0"
