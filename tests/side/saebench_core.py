"""Runs in the side venv (tests/side_venv.py): SAEBench 0.6.0's core eval of one exported SAE.

Usage, from a folder holding the model as ``<hub name>/`` (config, weights, tokenizer, as
``save_pretrained`` writes them; TransformerLens reads a local folder of the hub name
instead of the hub): python saebench_core.py EXPORT_DIR TOKENS.safetensors BATCH

SAEBench's ``multiple_evals`` downloads the model and the dataset from the hub; this
calls what it calls after that, ``load_and_format_sae`` and ``run_evals`` with a ``CoreEvalConfig``, on a
``HookedTransformer.from_pretrained_no_processing`` of the local model and a SAELens
``ActivationsStore`` over our pre-tokenised contexts (in order), with the ignored tokens
``multiple_evals`` passes (the tokenizer's pad, EOS and BOS). Prints one JSON line.
"""

import json
import sys
from importlib.metadata import version

import datasets
import torch
from sae_bench.evals.core.eval_config import CoreEvalConfig
from sae_bench.evals.core.main import run_evals
from sae_bench.sae_bench_utils.general_utils import load_and_format_sae
from sae_lens import SAE
from sae_lens.training.activations_store import ActivationsStore
from safetensors.torch import load_file
from transformer_lens import HookedTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer

export_dir, tokens_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
# as multiple_evals does for an SAE object: check the decoder norms, standardise the config
_, sae, _ = load_and_format_sae("sae-paper", SAE.load_from_disk(export_dir), "cpu")
name = sae.cfg.metadata.model_name
hf_model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
model = HookedTransformer.from_pretrained_no_processing(name, hf_model=hf_model, tokenizer=AutoTokenizer.from_pretrained(name),
                                                        device="cpu", dtype=torch.float32)
tokens = load_file(tokens_path)["tokens"]
n_contexts, context_size = tokens.shape
store = ActivationsStore.from_sae(model, sae, dataset=datasets.Dataset.from_dict({"tokens": tokens.tolist()}),
                                  context_size=context_size, store_batch_size_prompts=batch, streaming=False)
config = CoreEvalConfig(model_name=name, batch_size_prompts=batch, n_eval_reconstruction_batches=n_contexts // batch,
                        n_eval_sparsity_variance_batches=n_contexts // batch, compute_kl=True, compute_ce_loss=True,
                        compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
                        dataset="pre-tokenised held-out contexts of sae-paper", context_size=context_size,
                        llm_dtype="float32")
ignore = {model.tokenizer.pad_token_id, model.tokenizer.eos_token_id, model.tokenizer.bos_token_id}
metrics, _ = run_evals(sae, store, model, config, ignore_tokens=ignore)
print(json.dumps({"sae_bench": version("sae-bench"), "sae_lens": version("sae-lens"),
                  "ignore_tokens": sorted(t for t in ignore if t is not None),
                  "metrics": metrics}))
