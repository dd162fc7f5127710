"""Sharing a run: the Hugging Face Hub (``hub.py``), its model card (``card.py``), posterior
encodings (``encode.py``) and the networks exported with their parameterization (``export.py``)."""
