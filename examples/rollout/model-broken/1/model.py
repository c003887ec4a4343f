"""A broken version of the rollout example's model: Y = X + 3, but 30 % of requests fail.

The failure is a model error (Triton answers it as an internal error, the gateway as a 500), the
kind of regression analysis must catch: most requests still work, so a quick manual check passes.
The draw is random rather than a function of X, so it cannot line up with the canary split's
deterministic pattern and give 0 % or 100 % failures by accident.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

FAILURE_RATIO = 0.3


class TritonPythonModel:
    def initialize(self, args):
        self.rng = np.random.default_rng()

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if self.rng.random() < FAILURE_RATIO:
                error = pb_utils.TritonError("version 3 regression: cannot handle this input")
                out.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("Y", (x + 3.0).astype(np.float32))]))
        return out
