"""Loading model files into torch modules: `loader` (single files and the entry points), `checkpoint_io` (the one
safe reader of a model file), `config_infer` and `ldm_convert` (architecture and key names from the weights),
`pipeline_build` and `diffusers_folder` (building the diffusers pipeline).
"""
