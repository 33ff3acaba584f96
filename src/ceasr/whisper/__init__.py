"""Whisper in ceasr: log-mel front end, tokenizer, checkpoint converters, decoding, recognizer, fine-tuning.

The network itself is :mod:`ceasr.models.whisper`; this folder holds what surrounds it, one stage a module:
``audio`` -> ``tokenizer`` -> ``convert`` (OpenAI / Hugging Face / CTranslate2 -> ceasr model directory)
-> ``decoding`` -> ``recognizer`` (``ceasr.load_model``) -> ``finetune``; their frozen configs are in ``config``.
"""
