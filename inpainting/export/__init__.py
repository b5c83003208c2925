"""Exporting a generator for deployment.

- `signatures`: the exported functions (`ServingModule`'s `serving_default` and `inpaint`), the
  checks of the sizes that encoded images declare, and the generator an export traces.
- `saved_model`: versioned SavedModel folders for TF Serving, with warm-up requests.
- `tflite`: TFLite (LiteRT) models with built-in ops only.
- `job`: the export of a checkpoint, as `export.py` runs it.

`inpainting.inference.runners` runs what these write.
"""
