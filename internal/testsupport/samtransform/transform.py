"""The SAM transform of a template, as CloudFormation applies it to what
`sam package` uploads.

    python3 transform.py template.yaml < request.json > transformed.json

request.json is {"parameters": {Name: value}, "code": {LogicalId:
"s3://bucket/key"}, "bucket": "name"}. Each AWS::Serverless::Function's
local CodeUri is replaced by its location in "code", else by
s3://<bucket>/<LogicalId>.zip, as `sam package` replaces it by the zip it
uploads; with neither, it is an error. The template is read with the YAML loader of SAM
and the AWS CLI (YAML 1.1 and CloudFormation's short tags). The region is
AWS_DEFAULT_REGION's.
"""

import json
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """A template whose roles are written out names no managed policy for
    SAM to look up; a lookup would need IAM, which a rehearsal has not."""

    def load(self):
        sys.exit("the template has SAM look up managed policies by name: write its roles out")


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        template = yaml_parse(f.read())
    request = json.load(sys.stdin)
    code = dict(request.get("code", {}))
    bucket = request.get("bucket")
    for name, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        uri = res.get("Properties", {}).get("CodeUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            if name in code:
                res["Properties"]["CodeUri"] = code.pop(name)
            elif bucket:
                res["Properties"]["CodeUri"] = f"s3://{bucket}/{name}.zip"
            else:
                sys.exit(f"{name}: no S3 location given for its CodeUri {uri}")
    if code:
        sys.exit(f"S3 locations given for no function with a local CodeUri: {sorted(code)}")
    try:
        out = transform(template, request.get("parameters", {}), NoManagedPolicies())
    except InvalidDocumentException as e:
        sys.exit("\n".join(c.message for c in e.causes))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


main()
