"""The model and how it is trained: params (config), MNIST data, layers and model, losses,
training and its steps, checkpoints."""
