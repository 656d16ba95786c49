"""bucketchat: serverless chat in a bucket."""
