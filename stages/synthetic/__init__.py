"""The synthetic world: a procedurally generated stand-in for Waterbirds and ImageNet (docs/method.md).

It draws the nuisances an LLM names as spurious. Four kinds, each drawn procedurally in numpy on
float RGB images in [0, 1] (H, W, 3) and strong enough to be visible at 32 px, each with the words
a caption uses for it:

- scenes (the background; each a land, water or neither place, as in Waterbirds): scenes.py,
- textures (on the object only, given its mask: patterns, colours, materials): textures.py,
- image quality (the whole image: blur, noise, pixels, lighting, contrast, colour, framing, and
  what a camera or a print does to a picture: smear, sharpening, tilt, a frame, a mirror,
  halftone): quality.py,
- styles (the whole image re-drawn: sketch, cartoon, painting; the shifted sets' renditions): styles.py.

Their shared drawing primitives are canvas.py's; the words of those captions that the world renders
are vocabulary.py's. On top of them: species.py (the species, their habitual scenes and how one
image is drawn), groups.py (SynthBirds' classes, places, scenes and groups), world.py (SynthBirds'
data set and the CLI that writes it and the pre-training set), captions.py (the captions and the
captioned pre-training set), source.py (the many-class source task and its shifted sets) and
teacher.py (the tiny CLIP and its zero-shot check).
"""
