"""Data: the views-dataset schema, embedded sample sets, paired image+mask augmentation, collators."""
