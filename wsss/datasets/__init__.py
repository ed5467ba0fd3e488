"""Data sets: the PASCAL VOC layout reader every stage uses (voc), the built-in data sets' generators and
the converters from other releases' formats into that layout."""
