"""The task layer: one function per user-facing operation, called by the GUI and the CLI alike.

Each takes a frozen request and a ``TaskContext`` (stop, progress, partial results) and returns
a record, or yields records; none prints, draws or knows which front end runs it.

- open a model:     ``models.open_model(ModelRef)`` (a bundled name, a file or a run folder)
- train:            ``train.plan_train(TrainRequest)`` (new, resume, continue), then ``train.train``
- sample:           ``sample.sample_images`` / ``sample_to_file`` (the CLI), ``sample.sample_frames``
                    (the Sampler panel's animation), both from a ``SampleRequest``
- explore:          ``explore.interpolate``, ``guidance_sweep``, ``nearest_neighbours``,
                    ``denoise_from``, ``identity_curve``, ``model_view``
- the forward process: ``forward.noise_strip``
- evaluate:         ``evaluate.evaluate(EvaluateRequest)``
"""
