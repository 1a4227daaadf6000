# moto's server, as `moto_server -H HOST -p PORT` starts it, but with DynamoDB
# requests handled one at a time: moto's DynamoDB does not make a
# conditional write atomic across its server's threads, and DynamoDB does
# (see the package comment of moto.go). argv: HOST PORT.
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def serialized(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb:
            # Read the whole answer inside the lock: the write happens while
            # the application runs, the answer may be produced lazily.
            return list(app(environ, start_response))
    return app(environ, start_response)


run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True)
