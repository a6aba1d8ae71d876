"""Item and shopper-state encoders (BERT text + structured attributes), fine-tuned offline and cached."""
