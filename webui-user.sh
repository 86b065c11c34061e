#!/usr/bin/env bash
#########################################################
# Uncomment and change the variables below to your need:#
#########################################################

# Command-line flags for Atelier (the same names as AUTOMATIC1111), e.g.
#   --api                      serve the HTTP API under /sdapi/v1
#   --listen                   serve other computers on the network (add --gradio-auth/--api-auth!)
#   --data-dir /path/to/stable-diffusion-webui    reuse an existing A1111 install's models and settings
#   --ckpt-dir DIR --lora-dir DIR --embeddings-dir DIR
#   --medvram / --lowvram / --no-half / --no-half-vae / --use-cpu all
#export COMMANDLINE_ARGS=""

# python3 executable used to create the virtual environment
#python_cmd="python3"

# Folder of the virtual environment ("-" = use python_cmd directly, install nothing)
#venv_dir="venv"

# Install a specific torch build before the other packages (first run only), e.g. for CUDA 12.4:
#export TORCH_COMMAND="pip install torch torchvision --index-url https://download.pytorch.org/whl/cu124"

###########################################
