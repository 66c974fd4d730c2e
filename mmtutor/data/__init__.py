"""The book's datasets, all offline and deterministic.

- :mod:`mmtutor.data.avdigits`  handwritten digit images paired with spoken digits (English and Mandarin)
"""
