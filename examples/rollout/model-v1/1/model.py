"""Version 1 of the rollout example's model: Y = X + 1 (FP32, any length).

The cheapest real inference there is, so the demo and the tests measure the rollout, not a model.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

OFFSET = 1.0


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.Tensor("Y", (x + OFFSET).astype(np.float32))
            out.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return out
