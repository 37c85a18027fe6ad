"""Report stage: per-report tables (Markdown, CSV, LaTeX), figures and a Reading of the numbers."""
