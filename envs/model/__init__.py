"""The fitted shopper model: catalog tables, logged episodes, named features, the click /
purchase / leave response model, measured dynamics and the simulator folder that holds them."""
