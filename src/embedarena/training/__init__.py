"""Training: hard-negative mining, contrastive fine-tuning of embedders, cross-encoder
reranker fine-tuning.

Modules: `mining` (FlagEmbedding hn_mine-compatible, label-aware), `trainer` (the machinery
every trainer shares: settings base, the Hugging Face `Trainer` subclass, `TrainingArguments`
mapping, progress, vocabulary check, save/resume), `data` (groups, sampling, scored pairs,
collation), `losses` (InfoNCE with false-negative masking and cross-device negatives;
group CE, BCE and MSE for cross-encoders), `vocab` (unknown-token check and vocabulary
extension), `health` (the collapsed-run check), `embedder` (`train_embedder`), `reranker`
(`train_reranker`), `finetune` (the experiment file's `finetune:` entries). Torch and
transformers are imported inside functions, so importing this package is cheap.
"""
