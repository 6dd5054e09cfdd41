"""Analysis above the models: sizes of registered models and the papers' tables beside ours (the analytic counters
themselves live with the blocks, in ``crunet.layers.complexity``)."""
