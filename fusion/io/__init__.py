"""The I/O layer: reading (and writing) the file formats a cohort is made of.

Manifests and tables (`cohort`), DICOM series (`dicom_series`), genomic tables and MAF files
(`genomic`), GMT gene-set files (`gmt`), per-patient feature files (`feature_files`) and tile images
(`tiles`). Nothing here knows about modalities, heads or models: this layer sits below them all
and imports only third-party libraries and `fusion.errors`.
"""
