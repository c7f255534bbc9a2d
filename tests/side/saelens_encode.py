"""Runs in the side venv (tests/side_venv.py): load our exports with SAELens and encode/decode.

Usage: python saelens_encode.py JOB.json — JOB lists {"dir": export folder, "inputs": a
safetensors file with "x"} and "out", the safetensors file to write each SAE's codes and
reconstructions into ("<i>.codes", "<i>.recon"). Prints one JSON line: what SAELens read.
"""

import json
import sys
from importlib.metadata import version

import torch
from sae_lens import SAE
from safetensors.torch import load_file, save_file

job = json.loads(open(sys.argv[1]).read())
outputs, loaded = {}, []
with torch.no_grad():
    for i, item in enumerate(job["saes"]):
        sae = SAE.load_from_disk(item["dir"])
        x = load_file(item["inputs"])["x"]
        codes = sae.encode(x)
        outputs[f"{i}.codes"] = codes.contiguous()
        outputs[f"{i}.recon"] = sae.decode(codes).contiguous()
        meta = sae.cfg.metadata
        loaded.append({"class": type(sae).__name__, "architecture": sae.cfg.architecture(), "d_in": sae.cfg.d_in,
                       "d_sae": sae.cfg.d_sae, "dtype": str(sae.W_enc.dtype), "model_name": meta.model_name,
                       "hook_name": meta.hook_name, "context_size": meta.context_size,
                       "prepend_bos": meta.prepend_bos, "alpha": (meta.sae_paper or {}).get("alpha")})
save_file(outputs, job["out"])
print(json.dumps({"sae_lens": version("sae-lens"), "transformer_lens": version("transformer-lens"), "loaded": loaded}))
