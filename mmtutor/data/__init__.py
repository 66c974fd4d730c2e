"""The book's datasets, all offline and deterministic.

- :mod:`mmtutor.data.avdigits`  handwritten digit images paired with spoken digits (English and Mandarin)
- :mod:`mmtutor.data.shapes`    RGB scenes of coloured shapes with captions and question-answer pairs, from a seed
- :mod:`mmtutor.data.dialogue`  a hand-written bilingual (English/中文) Q&A corpus about the book's subject,
  with fixed train/val/test splits
"""
