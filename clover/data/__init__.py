"""Dataset readers (the files exactly as published), training datasets and the synthetic benchmark."""
