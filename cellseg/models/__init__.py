"""Networks, loss, learning-rate schedules and the LightningModule."""
