"""Lambda function ARNs, split and rebuilt as ``greengrasssdk.Lambda.Client.invoke`` needs."""


class FunctionArnFields:
    def __init__(self, arn_string):
        parts = arn_string.split(":")
        if (
            len(parts) not in (7, 8)
            or parts[:3] != ["arn", "aws", "lambda"]
            or parts[5] != "function"
        ):
            raise ValueError("not a Lambda function ARN: {!r}".format(arn_string))
        self.unqualified_arn = ":".join(parts[:7])
        self.qualifier = parts[7] if len(parts) == 8 else ""

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        return "{}:{}".format(unqualified_arn, qualifier) if qualifier else unqualified_arn
