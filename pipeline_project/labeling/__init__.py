"""People in the loop: the queues of items the models are unsure about, the labels people give them on the
labeling page (`make label`), and how those labels reach the datasets and the next models. No Dagster here."""
