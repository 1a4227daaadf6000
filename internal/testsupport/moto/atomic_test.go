package moto_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
)

// TestConditionalWritesAreAtomic: racing conditional updates on one item,
// each requiring what only the first can find (the shape of store/dynamo's
// lease), succeed exactly once, as DynamoDB guarantees and the broker's
// leases need. moto_server alone lets two through now and then (the store
// conformance suite's lease race failed 3 of 9 runs on a loaded machine),
// which is why launcher.py serializes DynamoDB requests. Sixty more SET
// clauses widen moto's gap between checking the condition and writing, so
// without the launcher's lock this test fails every run.
func TestConditionalWritesAreAtomic(t *testing.T) {
	acct := moto.Shared(t).NewAccount(t)
	db := dynamodb.NewFromConfig(acct.Config())
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String("atomic"),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The padding: #p0 = :p, … #p59 = :p.
	names := map[string]string{"#pk": "pk", "#o": "owner", "#v": "v"}
	update := "SET #o = :o, #v = #v + :one"
	for i := range 60 {
		n := "#p" + strconv.Itoa(i)
		names[n] = "pad" + strconv.Itoa(i)
		update += ", " + n + " = :p"
	}
	for round := range 10 {
		pk := &types.AttributeValueMemberS{Value: "item-" + strconv.Itoa(round)}
		// The item exists unleased; each writer takes its lease with a
		// conditional update, as store/dynamo's Lease does.
		if _, err := db.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String("atomic"),
			Item: map[string]types.AttributeValue{"pk": pk, "v": &types.AttributeValueMemberN{Value: "1"}}}); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.UpdateItem(t.Context(), &dynamodb.UpdateItemInput{
					TableName:                 aws.String("atomic"),
					Key:                       map[string]types.AttributeValue{"pk": pk},
					UpdateExpression:          aws.String(update),
					ConditionExpression:       aws.String("attribute_exists(#pk) AND attribute_not_exists(#o)"),
					ExpressionAttributeNames:  names,
					ExpressionAttributeValues: map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: strconv.Itoa(w)}, ":one": &types.AttributeValueMemberN{Value: "1"}, ":p": &types.AttributeValueMemberS{Value: "x"}},
					ReturnValues:              types.ReturnValueAllNew,
				})
				var ccf *types.ConditionalCheckFailedException
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.As(err, &ccf):
					t.Errorf("PutItem: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d of 16 racing conditional writes succeeded, want exactly 1", round, wins)
		}
	}
}
