"""Feature extraction: a frozen tile encoder over a cohort's tiles, one feature file per patient
(the file format itself is `fusion.io.feature_files`)."""
