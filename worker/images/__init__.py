"""Image inputs for the image tasks: where an image may come from (policy, pure), reading it
(one adapter per store: s3, http), decoding it within the limits (decode), and the loader that
does all of it for a request's images on a thread pool, off the model thread (loader).

Torch-free: the model adapter (worker.model.image_runner) preprocesses what the loader returns.
"""
