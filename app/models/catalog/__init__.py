"""The catalog of model files on disk: what exists, under which names and hashes (no file is loaded here).

`index.Catalog` is the entry point; `scan` walks folders; `checkpoint`, `vae` and `lora` describe each kind;
`extra_files` lists embedding and upscaler files.
"""
