"""`python -m stages.describe generate|fetch|check-vllm` (see stages.describe.cli)."""

from .cli import main

# guarded: a spawned worker process (vLLM) must not run the command again
if __name__ == "__main__":
    main()
