"""gradlab's Hydra plugin: hydra/launcher=joblib, stopped gently (joblib_launcher.py). Hydra takes a plugin
class only from the hydra_plugins namespace package, hence this folder beside gradlab's own."""
