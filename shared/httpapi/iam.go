package httpapi

import "github.com/aws/aws-lambda-go/events"

// noIdentityCause is logged when a token route request carries no IAM
// identity.
const noIdentityCause = "no IAM identity in requestContext"

// iamCaller returns the IAM identity API Gateway attached to a request it
// admitted with AWS_IAM authorization (requestContext.authorizer.iam), or
// nil if there is none. An identity counts only with its access key, its
// account and its principal's ARN (accessKey, accountId, userArn), which
// API Gateway sets for every SigV4-signed caller; callerId, userId,
// principalOrgId and cognitoIdentity are not required.
//
// A route admits IAM-signed requests only if it is deployed with AWS_IAM
// authorization; checking the identity here too means a route deployed
// without it (or another authorizer) answers nothing.
func iamCaller(rc events.APIGatewayV2HTTPRequestContext) *events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription {
	if rc.Authorizer == nil || rc.Authorizer.IAM == nil {
		return nil
	}
	id := rc.Authorizer.IAM
	if id.AccessKey == "" || id.AccountID == "" || id.UserARN == "" {
		return nil
	}
	return id
}
