"""The synthetic world: a procedurally generated stand-in for Waterbirds and ImageNet (DESIGN.md section 4)."""
