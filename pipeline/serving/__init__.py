"""The served forecaster: candidate against served model, promotion, decision log."""
