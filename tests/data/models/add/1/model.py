"""Tiny batched model: SUM = INPUT0 + INPUT1, DIFF = INPUT0 - INPUT1 (shapes [batch, n])."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if a.shape != b.shape:
                error = pb_utils.TritonError(f"INPUT0 shape {a.shape} != INPUT1 shape {b.shape}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("SUM", (a + b).astype(np.float32)),
                pb_utils.Tensor("DIFF", (a - b).astype(np.float32)),
            ]))
        return responses
