"""The journal's last lesson ("Linear Regression using pytorch and plotting"), as written, as a
plain script: the baseline that scripts/benchmark.py --process times `scripts/train.py` against.

Run: python scripts/journal_plain.py
Only two lines are added: matplotlib's Agg backend (no display), as gradlab uses. As in the
journal, `plt.show` is referenced but not called, so the figure is made but never drawn.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from sklearn import datasets  # noqa: E402

# 0) Data
X_numpy, Y_numpy = datasets.make_regression(n_samples=100, n_features=1, noise=20, random_state=1)

X = torch.from_numpy(X_numpy.astype(np.float32))
Y = torch.from_numpy(Y_numpy.astype(np.float32))
Y = Y.view(Y.shape[0], 1)
print(f"X is {X}")
print(f"Y is {Y}")

n_samples, n_features = X.shape

# 1) Model
model = nn.Linear(n_features, 1)

# 2) loss and optimizer
learning_rate = 0.01
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)

# 3) learning iteration
n_epochs = 1000

print(f"Prediction before running for f(5): {model(torch.tensor([5], dtype=torch.float32))[0]}")
for epoch in range(n_epochs):
    # forward pass and loss
    y_predicted = model(X)
    loss = criterion(y_predicted, Y)
    # back propagation (to get gradient)
    loss.backward()
    # update weight/feature
    optimizer.step()
    # zero the gradient
    optimizer.zero_grad()
    if (epoch + 1) % 10 == 0:
        print(f"Epoch {epoch + 1}; loss: {loss.item():.4f}")

print(f"Prediction before running for f(5): {model(torch.tensor([5], dtype=torch.float32))[0]}")

predicted = model(X).detach().numpy()
plt.plot(X_numpy, Y_numpy, "ro")
plt.plot(X_numpy, predicted, "b")
plt.show  # noqa: B018 (as in the journal: not called)
