"""Similar patients: the fused embeddings of a reference set (the training split), searched by cosine
similarity for each query patient, with the neighbours' outcomes."""
