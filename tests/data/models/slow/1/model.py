"""Sleeps SECONDS before answering: lets tests exceed a deadline for real."""

import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            seconds = pb_utils.get_input_tensor_by_name(request, "SECONDS").as_numpy()
            time.sleep(float(seconds.reshape(-1)[0]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUT", seconds)]))
        return responses
