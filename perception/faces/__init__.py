"""Face perception: procedural identities, simulator datasets, detector, recogniser, ONNX loaders, pipeline.

Modules: :mod:`~perception.faces.identity` (identities and head textures), :mod:`~perception.faces.world`
(humans in a furnished MuJoCo room), :mod:`~perception.faces.dataset` (rendered, labelled datasets),
:mod:`~perception.faces.detector`, :mod:`~perception.faces.recognizer`, :mod:`~perception.faces.external`
(YuNet / SFace ONNX files) and :mod:`~perception.faces.pipeline`.
"""
