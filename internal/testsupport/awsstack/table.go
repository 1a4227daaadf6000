package awsstack

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// AllEvents is a rule pattern matching every lifecycle event the functions
// put on the bus: the README's pattern with every detail-type, for
// Account.Subscribe.
const AllEvents = `{"source":["oauthbroker"],"detail-type":["oauthbroker.connection.created","oauthbroker.connection.recovered",` +
	`"oauthbroker.connection.needs_reauth","oauthbroker.connection.failing","oauthbroker.connection.deleted","oauthbroker.connection.abandoned"]}`

// Items returns every item of the stack's table (read consistently),
// rendered as JSON and keyed by "pk|sk": a snapshot to show that a refused
// request wrote nothing.
func (s *Stack) Items(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	var startKey map[string]types.AttributeValue
	for {
		page, err := s.DynamoDB.Client.Scan(t.Context(), &dynamodb.ScanInput{TableName: &s.Table, ExclusiveStartKey: startKey, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			var m map[string]any
			if err := attributevalue.UnmarshalMap(item, &m); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			out[m["pk"].(string)+"|"+m["sk"].(string)] = string(b)
		}
		if startKey = page.LastEvaluatedKey; len(startKey) == 0 {
			return out
		}
	}
}

// Item returns the raw item at pk and sk (read consistently), or nil: for
// checking what the functions store as DynamoDB holds it.
func (s *Stack) Item(t testing.TB, pk, sk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := s.DynamoDB.Client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName:      &s.Table,
		ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: pk},
			"sk": &types.AttributeValueMemberS{Value: sk},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}
