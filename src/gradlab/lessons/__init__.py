"""The course's lessons: what a learner reads next to the journal. Nothing here imports the rest of
gradlab; the machinery (gradlab.run, gradlab.show, gradlab.checks) uses these classes.

- linear.py: the journal's linear model and its LightningModule (MSE, three gradient paths);
- classifiers.py: logistic (lesson 08) and softmax (lesson 11) regression on the same paths;
- mlp.py: the feed-forward network (lessons 12, 13), its analytic path backpropagation written out;
- cnn.py: the convolutional network (lesson 14): features (conv, relu, pool), head (linear layers);
- data.py: the LightningDataModules (splits, standardisation, batches);
- csvfile.py: reading your own CSV file, and DataError.

The model interface. The recipe, eval.py, predict.py, the reports, the pictures and the checkpoint
checks use only this, so a new model is one module here and one YAML (conf/model/NAME.yaml), plus
its keys in gradlab/checks/schema.py:
- `hparams.n_features`: how many inputs the model takes (its constructor's `n_features`);
- `task`: "regression" or "classification", which report and pictures fit it;
- `coefficients()`: the weights (K, F) and the bias (K,) or None, K the number of outputs; or None
  itself for a network with hidden layers (no per-feature weights), which then has `architecture()`;
- `outputs(x)`: the columns predict.py writes for raw model inputs, each a (Q,) tensor;
- `plain_layers()`: the network as the nn.Sequential of torch's layers a learner would write, sharing
  the model's modules (so its weights), from standardised inputs to the output (export.py saves it);
- `best_fit(x, y)`: the best this model can do on (x, y), {"weight", "bias", "loss"}, or None
  where no finite optimum exists;
- `loss_name`: what `{stage}/loss` is, for the report ("MSE");
- `criterion`: the training loss, an nn.Module.
Classifiers add `labels`, the targets they need from the data ("binary" or "index"), and
`separation(x, y)`, which the report uses to say why `best_fit` has no finite optimum; a model whose
constructor takes `n_classes` gets the data's number of classes (a model with `fits_numbers_too`,
the MLP, also trains on numeric targets, without `n_classes`, and its `task` is then "regression"); one
taking `image_shape` (the CNN) gets the data's (H, W) or (C, H, W), and `accuracy_per_line` asks the
report for lesson 14's accuracy lines, one per class.
"""
