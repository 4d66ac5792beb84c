"""Running trained models: the generic decoders, and one path per job: translating,
sampling a character LM, and forecasting prices."""
