"""brainseg: review AI tumor detection and segmentation on brain MRI (LGG).

Modules, in the order data flows through them: ``data`` (Kaggle-layout reading), ``split``
(patient-level split), ``preprocess`` (the one preprocessing path), ``models``, ``losses``, ``train``,
``cascade`` (batched classifier + segmenter), ``metrics``, ``evaluate``, ``review`` (any-threshold
figures), ``bench``, ``predict``, ``model_card``; reviewer tools ``error_queue``, ``calibration``,
``uncertainty``, ``saliency``, ``export``, ``review_log``; the app's ``dashboard``, ``overlays`` and
``figures``.
"""

__version__ = "0.1.0"
