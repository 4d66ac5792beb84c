"""Pure data preparation: tokens and vocabularies, subwords, batches with static shapes,
forecasting windows, and price series. No file I/O: stages read and write."""
