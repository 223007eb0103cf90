"""Retrieval evaluation: questions from human-written USDM answer keys, scored on the index and on a baseline.

The rules, one concern a module:

- ``answer_keys``: the USDM answer keys, their answer passages and the questions asked about them;
- ``relevance``: when a retrieved text holds a question's answer, and when the PDF does at all;
- ``retrievers``: the pipeline's search and the BM25 baseline;
- ``metrics``: recall@k and MRR over the rank of the first relevant passage;
- ``run``: one evaluation (``run_evaluation``, also the ``retrieval_quality`` asset check), its report;
- ``cli``: ``ray-rag evaluate``.
"""
