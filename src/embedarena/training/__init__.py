"""Training: hard-negative mining and contrastive fine-tuning of embedders.

Modules: `mining` (FlagEmbedding hn_mine-compatible, label-aware), `data` (groups, sampling,
collation), `losses` (InfoNCE with false-negative masking and cross-device negatives),
`vocab` (unknown-token check and vocabulary extension), `embedder` (the Hugging Face
`Trainer` subclass and `train_embedder`), `finetune` (the experiment file's `finetune:`
entries). Torch and transformers are imported inside functions, so importing this package
is cheap.
"""
