"""What runs and publishes the study, beside its Snakefile: the plan (plan.py), a notebook executed (execute.py), the
report pages and index (pages.py, templates/), JupyterLab's kernel and save hook (jupyter_setup.py), and the command
line `inverse-vae` (__main__.py). It imports the study (lib/inverse_vae); the study never imports it.
"""
