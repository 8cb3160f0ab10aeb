"""Small text assets that ship with convnet-apps (installed as ``convnet_apps_data``).

``weights.tsv`` is the catalogue of model files that the resolver in
``shared.weights`` knows how to find or download.
"""
