"""Accelerate scripts: fine-tuning (train_qa), evaluation (evaluate) and dataset checks (check_data)."""
