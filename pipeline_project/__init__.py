"""pipeline_project: a music collection in, anonymized training data and trained models out."""
